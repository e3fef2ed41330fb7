"""Bus messages: frozen, tagged msgspec Structs, one module per subject family.

Each module ends with the union its subjects carry and the one typed decoder for it.
"""
