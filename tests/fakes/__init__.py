"""Local stand-ins for external providers, speaking their protocols over real HTTP (DESIGN.md §9)."""
