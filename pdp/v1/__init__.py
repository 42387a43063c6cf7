"""Generated gRPC/protobuf modules for ``proto/pdp/v1/decision.proto`` (package ``pdp.v1``).

``decision_pb2`` (messages), ``decision_pb2_grpc`` (``DecisionServiceStub``, servicer base,
``add_DecisionServiceServicer_to_server``) and ``decision_pb2.pyi`` (type stubs) are written by
``python proto/generate.py``: never edit them by hand. tests/test_wire.py fails when they are
stale. Import them explicitly (``from pdp.v1 import decision_pb2``); this package imports nothing
so that ``import pdp`` stays free of protobuf and gRPC.
"""
