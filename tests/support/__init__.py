"""Helpers the tests share: a DNS responder of their own, hosts files, fixtures."""
