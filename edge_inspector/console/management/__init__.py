"""Django management commands of the console (createadmin, setrole, unlock)."""
