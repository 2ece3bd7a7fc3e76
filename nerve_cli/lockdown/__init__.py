"""Locking a city down: broker credentials and TLS for every Nerve client, and the tools that generate and
provision certificates, users and ACLs from the city inventory (`nerve secure …`)."""
