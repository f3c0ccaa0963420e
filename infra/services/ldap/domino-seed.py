#!/usr/bin/env python3
"""Seed data for the Domino-style OpenLDAP directory of the tests, as LDIF.

Usage: domino-seed.py SUFFIX READER_DN READER_PASSWORD > seed.ldif

The shape is fixed so tests can assert exact counts (suffix o=Dirsync):

  ou=Sales / ou=Engineering / ou=Support   50 dominoPerson entries in all
      45 with mail given.surname@notes.dirsync.test
       5 without mail (every 10th person, starting with the 10th)
      cn holds the common name and the hierarchical name (Ada Adams/Sales/Dirsync);
      uid the short name; dominoUNID a stable 32-hex-digit id
  groups, directly under the suffix (dominoGroup):
      All People       the 50 people
      Sales            the people of ou=Sales and the group Sales Managers (nested)
      Sales Managers   3 people of ou=Sales
      Deny Access      2 people: treat them as disabled
      Empty Group      no members
  the bind account (READER_DN): not a person, read-only

DNs are written as OpenLDAP returns them (attribute types in lower case: it
rewrites CN= to cn=), so entry DNs and member values match byte for byte, as
they do in Domino (which writes CN=, OU=, O=). Compare DNs case-insensitively.
"""
import base64
import hashlib
import os
import sys

MAIL_DOMAIN = "notes.dirsync.test"
PEOPLE = 50
OUS = ["Sales", "Engineering", "Support"]
GIVEN = ["Ada", "Ben", "Carla", "Dmitri", "Elena", "Farah", "George", "Hana", "Ivan", "Julia"]
SURNAME = ["Adams", "Baker", "Chowdhury", "Dubois", "Evans"]


def ssha(password):
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def unid(dn):
    # Domino UNIDs are 32 upper-case hex digits; derive a stable one from the DN.
    return hashlib.md5(dn.upper().encode()).hexdigest().upper()


def entry(dn, *lines):
    return "\n".join([f"dn: {dn}", *lines]) + "\n"


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    suffix, reader_dn, reader_password = sys.argv[1:]
    org = suffix.split("=", 1)[1]
    out = [entry(suffix, "objectClass: organization", f"o: {org}")]
    out += [entry(f"ou={ou},{suffix}", "objectClass: organizationalUnit", f"ou: {ou}") for ou in OUS]

    reader_cn = reader_dn.split(",", 1)[0].split("=", 1)[1]
    out.append(entry(reader_dn, "objectClass: applicationProcess", "objectClass: simpleSecurityObject",
                     f"cn: {reader_cn}", "description: Read-only account the directory sync binds as",
                     f"userPassword: {ssha(reader_password)}"))

    people = {ou: [] for ou in OUS}
    everyone = []
    for i in range(PEOPLE):
        given, surname = GIVEN[i % len(GIVEN)], SURNAME[i // len(GIVEN)]
        ou = OUS[i % len(OUS)]
        dn = f"cn={given} {surname},ou={ou},{suffix}"
        lines = [
            "objectClass: inetOrgPerson", "objectClass: dominoPerson",
            f"cn: {given} {surname}", f"cn: {given} {surname}/{ou}/{org}",
            f"sn: {surname}", f"givenName: {given}",
            f"uid: {given[0].lower()}{surname.lower()}",
            f"dominoUNID: {unid(dn)}",
        ]
        if i % 10 != 9:
            lines.append(f"mail: {given.lower()}.{surname.lower()}@{MAIL_DOMAIN}")
        out.append(entry(dn, *lines))
        people[ou].append(dn)
        everyone.append(dn)

    def group(cn, members, mail=None):
        dn = f"cn={cn},{suffix}"
        lines = ["objectClass: dominoGroup", f"cn: {cn}", f"dominoUNID: {unid(dn)}"]
        if mail:
            lines.append(f"mail: {mail}")
        lines += [f"member: {m}" for m in members]
        out.append(entry(dn, *lines))
        return dn

    group("All People", everyone, mail=f"allpeople@{MAIL_DOMAIN}")
    managers = group("Sales Managers", people["Sales"][:3])
    group("Sales", people["Sales"] + [managers], mail=f"sales@{MAIL_DOMAIN}")
    group("Deny Access", [people["Engineering"][0], people["Support"][1]])
    group("Empty Group", [])

    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
