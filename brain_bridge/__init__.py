"""Brain bridge: Faust workers around the reflex engine (SPEC §1). Not built yet."""
