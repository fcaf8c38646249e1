"""Local stand-ins for external providers, speaking their protocols over real HTTP (docs/architecture.md §9)."""
