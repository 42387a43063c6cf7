"""Decision logs as a tool (SPEC §11): read them (``logfile``), decide them again with a
candidate policy set (``replay``), and review what each identity did with its access
(``review``). The live side (logging ``input``, shadow decisions) is in pdp.server."""
