"""The cluster runtime: the same service on a Ray Serve cluster, with replicas, autoscaling and failover.

    deployment.py    the Serve ingress deployment: each replica runs the whole app (`service.app.create_app`)
    autoscaling.py   the autoscaling policy on the load that matters here: open streams and queued frames
    launch.py        `pkdot serve --cluster ADDRESS`: connect to (or start) Ray, deploy, wait, tear down

Ray is imported only here, and only when a cluster is asked for (the `cluster` extra installs it).
"""
