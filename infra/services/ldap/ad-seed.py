#!/usr/bin/env python3
"""Seed data for the Samba AD domain of the tests, as LDIF on stdout.

Usage: ad-seed.py DOMAIN_DN SERVICE_PASSWORD > seed.ldif

Everything the tests read lives under OU=Dirsync (the base DN they sync from);
the read-only service account sits outside it, in OU=Service Accounts, as it
would in a real domain. The shape is fixed so tests can assert exact counts:

  OU=People,OU=Dirsync     1,600 users
    1,596 ordinary users   mail given.surname@dirsync.test; every 3rd one has
                           proxyAddresses (SMTP: primary, smtp: aliases; every
                           12th also a SIP: entry that is not an address)
    1 disabled user        Dana Disabled, userAccountControl 514
    3 users without mail   no mail, no proxyAddresses
  OU=Groups,OU=Dirsync     6 groups
    All Staff              every user of OU=People (1,600 members: more than
                           the 1,500 values Windows returns per range)
    Engineering            users 0-59 and the group Platform Team
    Platform Team          users 60-79 and the group Platform Oncall
    Platform Oncall        users 60-64 and user 0 (also a direct member of
                           Engineering)
    Sales                  a mail-enabled distribution group: users 100-129,
                           the disabled user and one user without mail
    Empty Group            no members

Users are created without passwords (Samba accepts userAccountControl 512
without one, and it keeps seeding fast); only the service account has one, set
through unicodePwd, which Windows only takes over an encrypted connection
(Samba takes it in clear too): send this LDIF over LDAPS.
"""
import base64
import sys
import unicodedata

MAIL_DOMAIN = "dirsync.test"
UPN_SUFFIX = "corp.dirsync.test"
ORDINARY = 1596

GIVEN = [
    "Ada", "Alan", "Amara", "Ben", "Carla", "Chen", "Dmitri", "Elena", "Farah", "George",
    "Hana", "Ivan", "José", "Julia", "Kofi", "Lars", "Lena", "Marco", "Mei", "Nadia",
    "Noah", "Olga", "Omar", "Priya", "Quinn", "Rafael", "Rosa", "Sam", "Sofia", "Tariq",
    "Uma", "Victor", "Wei", "Xavier", "Yara", "Yusuf", "Zara", "Zoë", "Liam", "Maya",
]
SURNAME = [
    "Adams", "Baker", "Chowdhury", "Dubois", "Evans", "Fischer", "García", "Haddad", "Ito", "Jensen",
    "Kowalski", "Larsen", "Martin", "Nakamura", "O'Brien", "Patel", "Quint", "Rossi", "Schmidt", "Tanaka",
    "Ueda", "Novak", "Weber", "Xu", "Yilmaz", "Zhang", "Ångström", "Moreau", "Silva", "Okafor",
    "Byrne", "Costa", "Dalton", "Eklund", "Fontaine", "Gupta", "Hughes", "Ivanova", "Jovanović", "Keller",
]
DEPARTMENTS = ["Engineering", "Sales", "Finance", "Support", "Marketing", "Operations", "Legal", "HR"]
TITLES = ["Associate", "Specialist", "Senior Specialist", "Manager", "Director"]

GROUP_SECURITY = -2147483646  # global security group
GROUP_DISTRIBUTION = 2        # global distribution group


def attr(name, value):
    """One LDIF line; base64 when the value is not plain ASCII (RFC 2849)."""
    value = str(value)
    safe = value.isascii() and value == value.strip() and not value.startswith((":", "<"))
    if safe and all(32 <= ord(c) < 127 for c in value):
        return f"{name}: {value}"
    return f"{name}:: {base64.b64encode(value.encode()).decode()}"


def ascii_fold(text):
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in text.lower() if c.isalnum())


def entry(dn, *lines):
    return "\n".join([attr("dn", dn), *[line for line in lines if line]]) + "\n"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    domain_dn, service_password = sys.argv[1], sys.argv[2]
    base = f"OU=Dirsync,{domain_dn}"
    people = f"OU=People,{base}"
    groups = f"OU=Groups,{base}"
    out = []

    for ou in (f"OU=Service Accounts,{domain_dn}", base, people, groups):
        out.append(entry(ou, "objectClass: organizationalUnit"))

    # The read-only service account: a plain user whose password never expires.
    pwd = base64.b64encode(f'"{service_password}"'.encode("utf-16-le")).decode()
    out.append(entry(
        f"CN=svc-dirsync,OU=Service Accounts,{domain_dn}",
        "objectClass: user",
        "sAMAccountName: svc-dirsync",
        f"userPrincipalName: svc-dirsync@{UPN_SUFFIX}",
        "displayName: Dirsync service account",
        "description: Read-only account the directory sync binds as",
        f"unicodePwd:: {pwd}",
        "userAccountControl: 66048",
    ))

    user_dns = []
    for i in range(ORDINARY):
        given, surname = GIVEN[i % len(GIVEN)], SURNAME[i // len(GIVEN)]
        cn = f"{given} {surname}"
        local = f"{ascii_fold(given)}.{ascii_fold(surname)}"
        mail = f"{local}@{MAIL_DOMAIN}"
        sam = f"user{i:04d}"
        lines = [
            "objectClass: user",
            f"sAMAccountName: {sam}",
            f"userPrincipalName: {sam}@{UPN_SUFFIX}",
            attr("givenName", given),
            attr("sn", surname),
            attr("displayName", cn),
            f"mail: {mail}",
            f"department: {DEPARTMENTS[i % len(DEPARTMENTS)]}",
            f"title: {TITLES[i % len(TITLES)]}",
            f"employeeID: E{100000 + i}",
            "userAccountControl: 512",
        ]
        if i % 3 == 0:
            lines.append(f"proxyAddresses: SMTP:{mail}")
            lines.append(f"proxyAddresses: smtp:{local}@{UPN_SUFFIX}")
            if i % 6 == 0:
                lines.append(f"proxyAddresses: smtp:{ascii_fold(given)[0]}{ascii_fold(surname)}{i}@legacy.{MAIL_DOMAIN}")
            if i % 12 == 0:
                lines.append(f"proxyAddresses: SIP:{mail}")
        dn = f"CN={cn.replace(',', chr(92) + ',')},{people}"
        out.append(entry(dn, *lines))
        user_dns.append(dn)

    disabled = f"CN=Dana Disabled,{people}"
    out.append(entry(
        disabled,
        "objectClass: user",
        "sAMAccountName: dana.disabled",
        f"userPrincipalName: dana.disabled@{UPN_SUFFIX}",
        "givenName: Dana", "sn: Disabled", "displayName: Dana Disabled",
        f"mail: dana.disabled@{MAIL_DOMAIN}",
        f"proxyAddresses: SMTP:dana.disabled@{MAIL_DOMAIN}",
        f"proxyAddresses: smtp:dana@{MAIL_DOMAIN}",
        "department: Sales",
        "userAccountControl: 514",
    ))

    no_mail = []
    for n, (cn, sam) in enumerate([("Kiosk Reception", "kiosk.reception"),
                                   ("Scanner Warehouse", "scanner.warehouse"),
                                   ("Training Room", "training.room")]):
        dn = f"CN={cn},{people}"
        out.append(entry(
            dn,
            "objectClass: user",
            f"sAMAccountName: {sam}",
            f"userPrincipalName: {sam}@{UPN_SUFFIX}",
            f"displayName: {cn}",
            "department: Operations",
            "userAccountControl: 512",
        ))
        no_mail.append(dn)

    def group(cn, members, group_type=GROUP_SECURITY, mail=None, aliases=()):
        lines = ["objectClass: group", f"sAMAccountName: {cn.lower().replace(' ', '-')}",
                 f"groupType: {group_type}", f"description: {cn} (dirsync test group)"]
        if mail:
            lines.append(f"mail: {mail}")
            lines.append(f"proxyAddresses: SMTP:{mail}")
            lines += [f"proxyAddresses: smtp:{a}" for a in aliases]
        lines += [attr("member", m) for m in members]
        dn = f"CN={cn},{groups}"
        out.append(entry(dn, *lines))
        return dn

    everyone = user_dns + [disabled] + no_mail
    group("All Staff", everyone, mail=f"allstaff@{MAIL_DOMAIN}")
    oncall = group("Platform Oncall", user_dns[60:65] + [user_dns[0]])
    team = group("Platform Team", user_dns[60:80] + [oncall])
    group("Engineering", user_dns[0:60] + [team], mail=f"engineering@{MAIL_DOMAIN}")
    group("Sales", user_dns[100:130] + [disabled, no_mail[0]], GROUP_DISTRIBUTION,
          mail=f"sales@{MAIL_DOMAIN}", aliases=[f"sales-team@{MAIL_DOMAIN}"])
    group("Empty Group", [])

    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
