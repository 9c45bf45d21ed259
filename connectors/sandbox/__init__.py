"""Local imitation of the Vitally and Salesforce REST APIs (a real HTTP server on loopback)."""
