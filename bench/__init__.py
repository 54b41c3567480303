"""papermail benchmarks: ``python -m bench`` times every stage of a day's digests on a synthetic
world of subscribers built from the bundled sample pages, next to the naive path, in one table;
``python -m bench.e2e`` runs the day's job through a real Celery worker, Redis, PostgreSQL and
SMTP server and says where the time goes.

Modules: ``world`` (the synthetic papers and subscribers), ``pipeline`` (the stages, timed),
``mime_variants`` (the MIME builders that lost, kept measured), ``smtp_sink`` (an aiosmtpd server
run as a separate process so its CPU never counts against the client's; it counts Message-IDs).
"""
