"""Settings: the configuration model, how its values are read, and the Graph API versions."""
