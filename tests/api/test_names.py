"""Name and value syntax checks (kube's util/validation), one row per rule."""

import pytest

from meshnet.api.names import (
    domain_prefixed_path_errors, ip_family, is_config_map_key, is_dns1035_label,
    is_dns1123_label, is_dns1123_subdomain, is_env_var_name, is_valid_cidr, is_valid_ip,
    is_valid_port_name, is_valid_port_num, is_wildcard_dns1123_subdomain, special_ip_errors,
)

# (description, check, value, expected messages; [] means valid)
CASES = [
    ("label", is_dns1123_label, "my-name", []),
    ("label starting with a digit", is_dns1123_label, "123-abc", []),
    ("label with a dot", is_dns1123_label, "a.b", ["must not contain dots"]),
    ("label too long", is_dns1123_label, "a" * 64, ["must be no more than 63 characters"]),
    ("label uppercase", is_dns1123_label, "A",
     ["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
      "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
      "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]),
    ("subdomain", is_dns1123_subdomain, "example.com", []),
    ("subdomain empty", is_dns1123_subdomain, "",
     ["a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
      "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
      "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
      ]),
    ("DNS-1035 label", is_dns1035_label, "web-1", []),
    ("DNS-1035 label with a leading digit", is_dns1035_label, "1web",
     ["a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
      "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
      "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"]),
    ("wildcard", is_wildcard_dns1123_subdomain, "*.example.com", []),
    ("double wildcard", is_wildcard_dns1123_subdomain, "*.*.example.com",
     ["a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, "
      "which must consist of lower case alphanumeric characters, '-' or '.' and end with an "
      "alphanumeric character (e.g. '*.example.com', regex used for validation is "
      "'\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"]),
    ("port 1", is_valid_port_num, 1, []),
    ("port 65535", is_valid_port_num, 65535, []),
    ("port 65536", is_valid_port_num, 65536, ["must be between 1 and 65535, inclusive"]),
    ("port name", is_valid_port_name, "http-alt", []),
    ("port name of 15", is_valid_port_name, "a" * 15, []),
    ("port name of 16", is_valid_port_name, "a" * 16, ["must be no more than 15 characters"]),
    ("port name all digits", is_valid_port_name, "8080",
     ["must contain at least one letter (a-z)"]),
    ("port name --", is_valid_port_name, "a--b", ["must not contain consecutive hyphens"]),
    ("IPv4", is_valid_ip, "10.96.0.1", []),
    ("IPv6", is_valid_ip, "2001:db8::1", []),
    ("IPv6 with zone", is_valid_ip, "fe80::1%eth0",
     ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]),
    ("IPv4 with leading zeros", is_valid_ip, "010.1.1.1",
     ["must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"]),
    ("CIDR", is_valid_cidr, "10.244.0.0/16", []),
    ("CIDR with host bits", is_valid_cidr, "10.244.0.1/16", []),
    ("CIDR without prefix", is_valid_cidr, "10.244.0.0",
     ["must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"]),
    ("public IP is not special", special_ip_errors, "192.0.2.10", []),
    ("IPv6 loopback", special_ip_errors, "::1",
     ["may not be in the loopback range (127.0.0.0/8, ::1/128)"]),
    ("link-local multicast", special_ip_errors, "224.0.0.251",
     ["may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)"]),
    ("config key", is_config_map_key, ".hidden", []),
    ("config key .", is_config_map_key, ".",
     ["must not be '.'"]),
    ("env var", is_env_var_name, "MY_VAR.1", []),
    ("domain-prefixed path", domain_prefixed_path_errors, "k8s.io/ingress-nginx", []),
]


@pytest.mark.parametrize("desc,check,value,want", CASES, ids=[c[0] for c in CASES])
def test_checks(desc, check, value, want):
    assert check(value) == want


@pytest.mark.parametrize("value,want", [("10.0.0.1", "IPv4"), ("fd00::1", "IPv6"),
                                        ("None", None), ("", None)])
def test_ip_family(value, want):
    assert ip_family(value) == want
