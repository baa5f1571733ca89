"""Provider adapters, one module each; ``registry.build_provider`` picks one for a config."""
