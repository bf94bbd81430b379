"""Join the two branches that grew from 0004 at once: a version's files and hashes (0005a) and its
preview images (0005b). Nothing to change: each stands alone.

Revision ID: 0006
Revises: 0005a, 0005b
Create Date: 2026-12-02
"""

revision = "0006"
down_revision = ("0005a", "0005b")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
