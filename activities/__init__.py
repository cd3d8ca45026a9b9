"""All I/O of a journey: admission, rule matching on fresh data, sends, WeCom."""
