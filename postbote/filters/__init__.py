"""Message filters: everything that looks at a message between its data and its commit."""
