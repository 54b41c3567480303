"""One router per concept: sign-up, manage, unsubscribe, reading (digests, papers, feed),
feedback (ratings and muted terms from digests)."""
