"""The `nerve` command line: composes schemas, reflexes, edge_agent and brain_bridge into one tool."""
