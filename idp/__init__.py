"""Identity registry (citizens, legal persons, staff, agents) and the OpenID Connect provider."""
