"""One typed settings tree for the whole server (`settings`), with its reply and server parts."""
