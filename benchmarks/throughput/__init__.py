"""Research-throughput benchmark (issue 13): a week of a GPU cluster replayed against four ways of running it."""
