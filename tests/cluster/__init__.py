"""The cluster harness (issue #20 item 5): three hosts in network namespaces behind HAProxy."""
