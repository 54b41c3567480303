"""One router per concept: sign-up, manage, unsubscribe, reading (digests, papers, feed)."""
