"""One module per command family; ``kubetune.cli.main`` registers them."""
