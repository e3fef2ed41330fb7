"""The built-in tools: one module each, an argument Struct plus an async function (STYLE 19)."""
