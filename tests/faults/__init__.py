"""Fault cases: each bad input or damaged file is named in one message and writes nothing wrong."""
