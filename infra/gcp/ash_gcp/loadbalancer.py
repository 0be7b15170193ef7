"""The public entry: a global external Application Load Balancer on a static address, with a Google-managed
certificate and a TLS 1.2+ policy on 443, and a port 80 that only redirects to HTTPS."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp


@dataclass
class LoadBalancerArgs:
    domain: str
    instance_group: pulumi.Input[str]
    health_check_id: pulumi.Input[str]


class LoadBalancer(pulumi.ComponentResource):
    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ash:gcp:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.address = gcp.compute.GlobalAddress(name, opts=child)
        self.backend = gcp.compute.BackendService(
            name,
            load_balancing_scheme="EXTERNAL_MANAGED",
            protocol="HTTP",
            port_name="api",
            # A response may be a stream that lasts a whole turn (SSE); the load balancer cuts it at this timeout.
            timeout_sec=3600,
            health_checks=args.health_check_id,
            backends=[gcp.compute.BackendServiceBackendArgs(group=args.instance_group, balancing_mode="UTILIZATION")],
            log_config=gcp.compute.BackendServiceLogConfigArgs(enable=True, sample_rate=1.0),
            opts=child,
        )
        certificate = gcp.compute.ManagedSslCertificate(
            name, managed=gcp.compute.ManagedSslCertificateManagedArgs(domains=[args.domain]), opts=child
        )
        policy = gcp.compute.SSLPolicy(name, profile="MODERN", min_tls_version="TLS_1_2", opts=child)
        https_map = gcp.compute.URLMap(name, default_service=self.backend.id, opts=child)
        https_proxy = gcp.compute.TargetHttpsProxy(
            name, url_map=https_map.id, ssl_certificates=[certificate.id], ssl_policy=policy.id, opts=child
        )
        self.https = self._port(f"{name}-https", https_proxy.id, "443", child)
        redirect_map = gcp.compute.URLMap(
            f"{name}-redirect",
            default_url_redirect=gcp.compute.URLMapDefaultUrlRedirectArgs(
                https_redirect=True, redirect_response_code="MOVED_PERMANENTLY_DEFAULT", strip_query=False
            ),
            opts=child,
        )
        http_proxy = gcp.compute.TargetHttpProxy(f"{name}-redirect", url_map=redirect_map.id, opts=child)
        self.http = self._port(f"{name}-http", http_proxy.id, "80", child)
        self.register_outputs({"address": self.address.address})

    def _port(
        self, name: str, proxy_id: pulumi.Input[str], port: str, opts: pulumi.ResourceOptions
    ) -> gcp.compute.GlobalForwardingRule:
        """`port` of the static address, forwarded to the proxy `proxy_id`."""
        return gcp.compute.GlobalForwardingRule(
            name,
            target=proxy_id,
            ip_address=self.address.address,
            port_range=port,
            load_balancing_scheme="EXTERNAL_MANAGED",
            opts=opts,
        )
