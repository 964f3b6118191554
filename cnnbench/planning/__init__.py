"""Planning: typed requests (what the user asked for, and which values were explicit), their validation
and presets, turned into the cells of a grid. No front end is imported here."""
