"""Man pages and shell completions generated from the code (one source: the argument parsers
and the config key list), so they cannot drift from ``--help`` or the loader."""
