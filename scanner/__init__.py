"""reachscan: bulk TCP/UDP reachability scanning that explains refusals."""

__version__ = "0.1.0"
