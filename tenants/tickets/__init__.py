"""Service: support tickets, their conversation (replies to the customer, internal notes) and the
workspace's service levels (first-response and resolution times per priority)."""
