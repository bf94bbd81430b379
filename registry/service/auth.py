"""Bearer tokens: random secrets, stored only as SHA-256, compared in constant time.

A token is scoped to one source (it may publish and yank there) or is an admin token (anything,
including managing tokens). A fast hash is enough here: tokens carry 256 random bits, so there is
nothing to brute-force (the same reasoning as GitHub's token storage).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from pseudoword.registry.core.errors import Forbidden, InvalidRequest, NotFound, Unauthorized
from pseudoword.registry.core.refs import parse_source
from pseudoword.registry.core.text import check_text
from pseudoword.registry.service.db import migration_lock
from pseudoword.registry.service.models import Token, utcnow

TOKEN_PREFIX = "pw_"
MAX_TOKEN_NAME = 128


@dataclass(frozen=True)
class Principal:
    token_id: int
    source: str | None
    admin: bool

    def require_source(self, source: str) -> None:
        if not (self.admin or self.source == source):
            raise Forbidden(f"this token may write to source {self.source!r}, not {source!r}",
                            {"token_source": self.source, "source": source})

    def require_admin(self) -> None:
        if not self.admin:
            raise Forbidden("this action needs an admin token")


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def authenticate(session: Session, authorization: str | None) -> Principal:
    if not authorization:
        raise Unauthorized("this action needs a token: send 'Authorization: Bearer <token>'")
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("malformed Authorization header: expected 'Bearer <token>'")
    digest = hash_secret(secret.strip())
    token = session.execute(select(Token).where(Token.token_hash == digest)).scalars().first()
    if token is None or not hmac.compare_digest(token.token_hash, digest) or token.revoked_at is not None:
        raise Unauthorized("invalid or revoked token")
    return Principal(token_id=token.id or 0, source=token.source, admin=token.admin)


def create_token(session: Session, *, source: str | None, admin: bool, name: str = "",
                 secret: str | None = None) -> tuple[Token, str]:
    """Create a token; the secret is returned once and never stored."""
    if source is not None:
        parse_source(source)
    if source is None and not admin:
        raise InvalidRequest("a token needs a source, or must be an admin token")
    if len(name) > MAX_TOKEN_NAME:
        raise InvalidRequest(f"token name is {len(name)} characters; at most {MAX_TOKEN_NAME} allowed")
    check_text(name, "token name")
    secret = secret or new_secret()
    token = Token(name=name, token_hash=hash_secret(secret), source=source, admin=admin)
    session.add(token)
    session.commit()
    session.refresh(token)
    return token, secret


def revoke_token(session: Session, token_id: int) -> Token:
    token = session.get(Token, token_id)
    if token is None:
        raise NotFound(f"no token with id {token_id}")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.add(token)
        session.commit()
    return token


def list_tokens(session: Session) -> list[dict[str, object]]:
    return [token_view(t) for t in session.execute(select(Token).order_by(Token.id)).scalars().all()]


def token_view(token: Token) -> dict[str, object]:
    return {"id": token.id, "name": token.name, "source": token.source, "admin": token.admin,
            "created_at": token.created_at.isoformat(), "revoked": token.revoked_at is not None}


def bootstrap_admin(engine: Engine, data_dir: Path, token_file: Path | None) -> str | None:
    """On a database with no tokens, install the first admin token.

    With ``token_file`` (a Docker/Kubernetes secret) that token is installed; otherwise a new one
    is written to ``<data_dir>/admin.token`` (0600) and returned so `serve` can print it once.
    Runs under the migration lock, so replicas starting together create at most one.
    """
    with migration_lock(engine):
        with Session(engine) as session:
            if session.execute(select(func.count()).select_from(Token)).scalar_one():
                return None
            if token_file is not None:
                secret = token_file.read_text().strip()
                if len(secret) < 20:
                    raise InvalidRequest(f"admin token in {token_file} is too short (at least 20 characters)")
                try:
                    create_token(session, source=None, admin=True, name="bootstrap", secret=secret)
                except IntegrityError:
                    session.rollback()
                return None
            _, secret = create_token(session, source=None, admin=True, name="bootstrap")
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "admin.token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    os.chmod(path, 0o600)
    return secret


def announce_admin_token(path: Path) -> None:
    """Say where the new admin token is; the secret itself never goes to a terminal or a log."""
    print(f"Created the first admin token: it is in {path} (mode 0600, readable by this user only)",
          file=sys.stderr, flush=True)
