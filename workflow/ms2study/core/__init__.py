"""Bottom layer: errors with a fix, atomic writes, stage parameters, table schemas and spectrum cleaning. Imports nothing else from ms2study."""
