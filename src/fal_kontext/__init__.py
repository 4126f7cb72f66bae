"""fal_kontext: the client, the local queue emulator and the contract kit for FLUX.1 Kontext on fal.ai."""

__version__ = "0.1.0"
