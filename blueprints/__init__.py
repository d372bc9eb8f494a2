"""The app's functions, one Blueprint per capability. Each handler is a few lines handing work to `shared/`."""
