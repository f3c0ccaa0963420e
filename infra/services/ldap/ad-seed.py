#!/usr/bin/env python3
"""Seed data for the Samba AD domain of the tests, as LDIF on stdout.

Usage: ad-seed.py DOMAIN_DN SERVICE_PASSWORD > seed.ldif
       ad-seed.py primary-groups DOMAIN_DN CONTRACTORS_RID > primary.ldif

The second form, applied after the first, makes Contractors the primary
group of its members (AD needs the group's RID, known once it exists, and
the user already a member; it then moves the user from the group's member
to Domain Users' member, the old primary group).

Everything the tests read lives under OU=Dirsync (the base DN they sync from);
the read-only service account sits outside it, in OU=Service Accounts, as it
would in a real domain. The shape is fixed so tests can assert exact counts:

  OU=People,OU=Dirsync     1,600 users
    1,596 ordinary users   mail given.surname@dirsync.test; every 3rd one has
                           proxyAddresses (SMTP: primary, smtp: aliases; every
                           12th also a SIP: entry that is not an address)
    1 disabled user        Dana Disabled, userAccountControl 514
    3 users without mail   no mail, no proxyAddresses
  OU=Contacts,OU=Dirsync   1 mail contact: Pat Partner, pat.partner@partner.example
  OU=Groups,OU=Dirsync     10 groups (global security unless said)
    All Staff              every user of OU=People (1,600 members: more than
                           the 1,500 values Windows returns per range)
    Engineering            users 0-59 and the group Platform Team
    Platform Team          users 60-79 and the group Platform Oncall
    Platform Oncall        users 60-64 and user 0 (also a direct member of
                           Engineering)
    Sales                  a mail-enabled distribution group: users 100-129,
                           the disabled user and one user without mail
    Empty Group            no members
    Équipe Qualité         universal security, sAMAccountName equipe-qualite:
                           users 140-149
    R&D, Berlin            domain local security, sAMAccountName rnd-berlin
                           (DN CN=R&D\, Berlin): users 150-159 and Engineering
    Contractors            users 200-219, each one's primary group (second form)
    Partner Newsletter     universal distribution: users 300-304 and the contact
  CN=Users                 Domain Users: every other user by primaryGroupID,
                           users 200-219 in its member (their old primary group)

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
GROUP_LOCAL_SECURITY = -2147483644      # domain local security group
GROUP_UNIVERSAL_SECURITY = -2147483640  # universal security group
GROUP_UNIVERSAL_DISTRIBUTION = 8        # universal distribution group
CONTRACTORS = range(200, 220)


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


def dn_value(text):
    """An RDN value escaped as RFC 4514 asks (only what the seed uses)."""
    return text.replace(",", "\\,")


def user_cn(i):
    return f"{GIVEN[i % len(GIVEN)]} {SURNAME[i // len(GIVEN)]}"


def user_dn(i, domain_dn):
    return f"CN={dn_value(user_cn(i))},OU=People,OU=Dirsync,{domain_dn}"


def primary_groups(domain_dn, rid):
    """Contractors' members get it as their primary group."""
    return "\n".join(
        entry(user_dn(i, domain_dn), "changetype: modify", "replace: primaryGroupID",
              f"primaryGroupID: {rid}", "-")
        for i in CONTRACTORS)


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "primary-groups":
        sys.stdout.write(primary_groups(sys.argv[2], int(sys.argv[3])))
        return
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    domain_dn, service_password = sys.argv[1], sys.argv[2]
    base = f"OU=Dirsync,{domain_dn}"
    people = f"OU=People,{base}"
    groups = f"OU=Groups,{base}"
    out = []

    contacts = f"OU=Contacts,{base}"
    for ou in (f"OU=Service Accounts,{domain_dn}", base, people, groups, contacts):
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
        cn = user_cn(i)
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
        dn = user_dn(i, domain_dn)
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

    partner = f"CN=Pat Partner,{contacts}"
    out.append(entry(
        partner,
        "objectClass: contact",
        "givenName: Pat", "sn: Partner", "displayName: Pat Partner (Partner Corp)",
        "mail: pat.partner@partner.example",
        "proxyAddresses: SMTP:pat.partner@partner.example",
    ))

    def group(cn, members, group_type=GROUP_SECURITY, mail=None, aliases=(), sam=None):
        sam = sam or cn.lower().replace(" ", "-")
        lines = ["objectClass: group", attr("sAMAccountName", sam),
                 f"groupType: {group_type}", attr("description", f"{cn} (dirsync test group)")]
        if mail:
            lines.append(f"mail: {mail}")
            lines.append(f"proxyAddresses: SMTP:{mail}")
            lines += [f"proxyAddresses: smtp:{a}" for a in aliases]
        lines += [attr("member", m) for m in members]
        dn = f"CN={dn_value(cn)},{groups}"
        out.append(entry(dn, *lines))
        return dn

    everyone = user_dns + [disabled] + no_mail
    group("All Staff", everyone, mail=f"allstaff@{MAIL_DOMAIN}")
    oncall = group("Platform Oncall", user_dns[60:65] + [user_dns[0]])
    team = group("Platform Team", user_dns[60:80] + [oncall])
    group("Engineering", user_dns[0:60] + [team], mail=f"engineering@{MAIL_DOMAIN}")
    engineering = f"CN=Engineering,{groups}"
    group("Sales", user_dns[100:130] + [disabled, no_mail[0]], GROUP_DISTRIBUTION,
          mail=f"sales@{MAIL_DOMAIN}", aliases=[f"sales-team@{MAIL_DOMAIN}"])
    group("Empty Group", [])
    group("Équipe Qualité", user_dns[140:150], GROUP_UNIVERSAL_SECURITY, sam="equipe-qualite")
    group("R&D, Berlin", user_dns[150:160] + [engineering], GROUP_LOCAL_SECURITY,
          sam="rnd-berlin")
    group("Contractors", [user_dns[i] for i in CONTRACTORS])
    group("Partner Newsletter", user_dns[300:305] + [partner], GROUP_UNIVERSAL_DISTRIBUTION,
          mail=f"newsletter@{MAIL_DOMAIN}")

    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
