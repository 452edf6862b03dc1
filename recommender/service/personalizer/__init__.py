"""Azure Personalizer's REST API beside our /v1: its SDKs and storefront code work against this service by
changing the endpoint and the key (docs/service.md, Personalizer API).

- ``routes``: Rank, Reward, Activate, single- and multi-slot (the one decision path of /v1);
- ``admin``: the administration API as far as it maps (service configuration, learning policy, model, logs);
- ``schemas``: its request and response shapes; ``errors``: its error body;
- ``mapping``: its requests as our DecisionInput, our Decision as its responses;
- ``features``: its schema-free features as our feature rows; ``slot_ids``: slot ids of multi-slot events;
- ``versions``: the path prefixes and ``api-version`` values served.
"""
