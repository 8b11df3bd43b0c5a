"""What operators run: the command line, check-config, preview, dead-letter stats and replay."""
