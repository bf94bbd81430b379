"""`python -m pseudoword`: the same as the `pseudoword` command."""

from pseudoword.cli.main import app

app(prog_name="pseudoword")
