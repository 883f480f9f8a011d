"""Names to addresses: the hosts file and DNS, every address with where it came from."""
