"""Host-side tools: definitions, registry, SDK generation, MCP adapter, policy and the bridge."""
