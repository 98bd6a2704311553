"""Model frontends: NIR files and graphs, the YAML model format, and the model zoo."""
