"""Line operations beside the frame path: drift alarms, shadow models, review capture, operator flags.

``coordinator.Operations`` is the one object the pipeline calls (three hooks); ``drift``, ``shadow``
and ``review`` hold the logic and their config sections, ``flags`` the MQTT listener for operator
flags. This room imports the shared contract and the publishers' MQTT client factory; never the
runtime (it is driven by it) nor the toolchain.
"""
