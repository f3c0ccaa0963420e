#!/usr/bin/env python3
"""A Domino-shaped directory with no common root, for the tests' OpenLDAP.

Usage:
  domino-root-seed.py ldif READER_DN READER_PASSWORD > root-seed.ldif
  domino-root-seed.py manifest > root-manifest.json
  domino-root-seed.py changes > root-changes.ldif     (for ldapmodify)

Laid out as HCL documents Domino's LDAP service, served by slapd.sh from a
database with the null suffix "" (so a blank base DN sees everything):

  o=Acme     ou=Sales, ou=Engineering, ou=Support, ou=Marketing   1,010 people
  o=AcmeEU   ou=Paris, ou=Berlin                                    221 people
  groups     flat names at the root (cn=All Staff, cn=Deny Access, ...), 42
  cn=Dirsync Reader,o=Acme   the bind account; only usable to bind (the ACL
             hides it from every search, so it is in no count below)

People (dominoPerson): cn holds the common name and the hierarchical name
(Jane Doe/Sales/Acme); about 15% also hold extra Internet addresses (some in
upper case, one repeating the primary address) and a few a non-address extra
name, as Domino returns the extra values of the User name field. mail is the
primary address; 10 people have none and 5 have a synthesized
name%domain@host address. dominoUNID is 32 upper-case hex digits. Six people
have a "," or "+" in their name: OpenLDAP returns their entry DNs with hex
escapes (cn=Doe\\2C Jane,...); some groups list them with the other form
(cn=Doe\\, Jane,...) and in other letter case and spacing.

Groups (dominoGroup): GroupType 0 multi-purpose, 1 mail only, 2 access
control list only, 3 deny list only, 4 servers only, or no GroupType at all.

Everything is derived from a fixed random seed: the manifest lists the exact
facts tests assert (see manifest()). Output is identical on every run
(but for the reader's salted password hash).

The manifest (JSON, "format": 1; slapd.sh writes it to the path it exports
as DIRSYNC_TEST_DOMINO_ROOT_MANIFEST). DNs are as OpenLDAP returns them:
  base_dn ""; suffixes; size_limit 1000 (unpaged searches end with result 4)
  unid_operational false (see unid_note: '*' returns dominoUNID here)
  counts        people, people_per_org {Acme, AcmeEU}, people_per_ou, groups,
                entries_blank_base (people + groups + orgs + OUs), people_with_mail
                (an ordinary address), people_without_mail, people_with_percent_mail,
                people_with_aliases, aliases, memberships (member values in all)
  people        [{dn, dominoUNID, org, ou, uid, cn [all values], mail|null,
                  aliases [lower case, de-duplicated, the primary left out]}]
  without_mail  [dn]; percent_mail {dn: address}
  groups        [{dn, cn, dominoUNID, GroupType 0-4|null, mail|null,
                  member [values exactly as stored]}]
  deny_group "cn=Deny Access"; deny_members_expanded [person dn] (through
                Terminations 2025 and Contractors Ended); cycle [Cycle A, Cycle B]
  escaped_memberships [{group, member_as_written, entry_dn}]: the member
                values written \\, / \\+ / other case and spacing, and the entry
                DN (hex form) each must match
  changes       [{what, dn, newrdn, new_superior|null, new_dn, dominoUNID}]:
                rename a person, move one between OUs, move one from o=Acme to
                o=AcmeEU, rename a group. The same as LDIF in `changes` mode:
                  ldapmodify -x -H "$DIRSYNC_TEST_DOMINO_ROOT_URL" \\
                    -D "$DIRSYNC_TEST_DOMINO_ROOT_ADMIN_DN" \\
                    -w "$DIRSYNC_TEST_DOMINO_ROOT_ADMIN_PASSWORD" \\
                    -f "$DIRSYNC_TEST_DOMINO_ROOT_CHANGES"
                or one by one, e.g. ldapmodrdn ... -s "ou=Engineering,o=Acme"
                -r "cn=Dmitri Ito,ou=Sales,o=Acme" "cn=Dmitri Ito" (ldap3:
                Ldap::modifydn(dn, newrdn, true, new_superior)). dominoUNID
                is kept (modrdn never touches other attributes); the refint
                overlay rewrites the member values naming the entry, in
                OpenLDAP's form. The hierarchical cn value is left as it was.
                Changes persist until slapd.sh start runs again.
Entries added or changed with ldapadd/ldapmodify get member values rewritten
by slapd in its own escape form (\\2C); only the seed (slapadd) keeps the
written forms.
"""
import base64
import hashlib
import json
import os
import random
import sys

ACME, ACME_EU = "o=Acme", "o=AcmeEU"
ORGS = {
    "Acme": {"ous": ["Sales", "Engineering", "Support", "Marketing"], "people": 1010, "domain": "acme.test"},
    "AcmeEU": {"ous": ["Paris", "Berlin"], "people": 221, "domain": "acme-eu.test"},
}
GIVEN = ["Ada", "Ben", "Carla", "Dmitri", "Elena", "Farah", "George", "Hana", "Ivan", "Julia",
         "Kofi", "Lena", "Marco", "Nadia", "Oscar", "Priya", "Quentin", "Rosa", "Sven", "Tara",
         "Umar", "Vera", "Wei", "Xenia", "Yusuf", "Zoë", "Åsa", "Björn", "Chloé", "Đorđe"]
SURNAME = ["Adams", "Baker", "Chowdhury", "Dubois", "Evans", "Fischer", "García", "Haddad",
           "Ito", "Jensen", "Kowalski", "Larsen", "Müller", "Nakamura", "O'Brien", "Petrov",
           "Quinn", "Rossi", "Silva", "Tanaka", "Ueda", "Virtanen", "Weber", "Xu", "Yilmaz",
           "Zhang", "Łukasik", "Søndergaard", "Novák", "Öztürk", "Kim", "Lee", "Patel", "Nguyen",
           "Brown", "Smith", "Moreau", "Bianchi", "Costa", "Horvat", "Ivanova", "Jovanović",
           "Kaur", "Lindqvist", "Murphy", "Nowak", "Olsen"]
# People whose name needs escaping in a DN: (org, ou, common name, how groups write them).
ESCAPED = [
    ("Acme", "Sales", "Doe, Jane"),
    ("Acme", "Engineering", "Smith, John"),
    ("Acme", "Support", "Lopez+Garcia Ana"),
    ("AcmeEU", "Paris", "Martin, Élodie"),
    ("AcmeEU", "Berlin", "Schmidt+Co Lars"),
    ("Acme", "Marketing", "Brown, Kate+Lee"),
]


def ssha(password):
    salt = os.urandom(8)
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def unid(key):
    return hashlib.md5(("acme-root:" + key).encode()).hexdigest().upper()


def rdn_value(value, hexform):
    """An RDN value escaped per RFC 4514: `\\,` `\\+` form, or the `\\2C` hex form."""
    out = []
    for ch in value:
        if ch in ',+"\\<>;=':
            out.append("\\%02X" % ord(ch) if hexform else "\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def ascii_local(name):
    table = str.maketrans("ëåöøüéèáíóúñłćčšžđ", "eaooueeaiounlccszd")
    s = name.lower().translate(table)
    return "".join(c for c in s if c.isalnum())


def b64_line(attr, value):
    if value.isascii() and not value.startswith((" ", ":", "<")):
        return f"{attr}: {value}"
    return f"{attr}:: {base64.b64encode(value.encode()).decode()}"


def build():
    rng = random.Random(20)
    people = []  # dicts
    used = set()
    for org, spec in ORGS.items():
        for i in range(spec["people"]):
            while True:
                given, surname = rng.choice(GIVEN), rng.choice(SURNAME)
                if (given, surname) not in used:
                    used.add((given, surname))
                    break
            ou = spec["ous"][i % len(spec["ous"])]
            people.append({"org": org, "ou": ou, "given": given, "surname": surname,
                           "name": f"{given} {surname}"})
    # The escaped names replace the last people of their OU.
    for org, ou, name in ESCAPED:
        p = next(p for p in reversed(people) if p["org"] == org and p["ou"] == ou and "escaped" not in p)
        p.update(name=name, escaped=True, given=name.split()[-1], surname=name.split(",")[0].split("+")[0])

    for n, p in enumerate(people):
        org, ou, name = p["org"], p["ou"], p["name"]
        p["dn"] = f"cn={rdn_value(name, True)},ou={ou},o={org}"  # as OpenLDAP returns it
        p["dn_escaped"] = f"cn={rdn_value(name, False)},ou={ou},o={org}"  # \, \+ form
        p["unid"] = unid(p["dn"])
        local = f"{ascii_local(p['given'])}.{ascii_local(p['surname'])}"
        p["uid"] = (ascii_local(p["given"])[:1] + ascii_local(p["surname"]))[:16] + str(n)
        p["mail"] = f"{local}@{ORGS[org]['domain']}"
        p["cn"] = [name, f"{name}/{ou}/{org}"]
        p["aliases"] = []
        p["percent"] = False
        p["no_mail"] = False
    # 10 without mail, 5 with a synthesized % address (never the escaped ones).
    plain = [p for p in people if not p.get("escaped")]
    picks = rng.sample(plain, 15 + 190)
    for p in picks[:10]:
        p["no_mail"] = True
        p["mail"] = None
    for p in picks[10:15]:
        p["percent"] = True
        p["mail"] = f"{p['uid'][:1]}{ascii_local(p['surname'])}%{p['org'].lower()}@notes.acme.test"
    # About 15% with extra Internet addresses as cn values.
    for k, p in enumerate(picks[15:]):
        local = f"{ascii_local(p['given'])}.{ascii_local(p['surname'])}"
        extra = [f"{local}@acme-old.test"]
        if k % 4 == 0:
            extra.append(f"{p['uid']}@acme.example")
        if k % 10 == 1:
            extra = [e.upper() for e in extra]  # aliases are compared in lower case
        if k % 19 == 2 and p["mail"]:
            extra.append(p["mail"].upper())  # repeats the primary: not an alias
        if k % 13 == 3:
            p["cn"].append(f"{p['given'][:1]}. {p['surname']}")  # a name, not an address
        p["cn"] += extra
        p["aliases"] = sorted({e.lower() for e in extra} - {(p["mail"] or "").lower()})
    return people


def groups_of(people):
    by_ou = {}
    for p in people:
        by_ou.setdefault((p["org"], p["ou"]), []).append(p)
    gdn = lambda cn: f"cn={cn}"
    groups = []  # (cn, type or None, mail or None, [member values as written])

    def add(cn, gtype, members, mail=None):
        groups.append({"cn": cn, "dn": gdn(cn), "unid": unid(gdn(cn)), "type": gtype,
                       "mail": mail, "member": members})

    def dns(ps):
        return [p["dn"] for p in ps]

    everyone = dns(people)
    add("All Staff", 0, everyone, "allstaff@acme.test")
    for (org, ou), ps in sorted(by_ou.items()):
        add(f"{org} {ou}", 0 if org == "Acme" else 1, dns(ps), f"{ascii_local(org)}-{ou.lower()}@acme.test")
    add("Acme Everyone", 1, [gdn(f"Acme {ou}") for ou in ORGS["Acme"]["ous"]], "everyone@acme.test")
    add("AcmeEU Everyone", 1, [gdn(f"AcmeEU {ou}") for ou in ORGS["AcmeEU"]["ous"]], "everyone@acme-eu.test")
    # Deny lists: Terminations 2025 is nested in Deny Access.
    plain = [p for p in people if not p.get("escaped")]
    term = plain[100:112]
    add("Terminations 2025", 3, dns(term))
    add("Contractors Ended", 3, dns(plain[300:304]))
    add("Deny Access", 3, dns(plain[200:205]) + [gdn("Terminations 2025"), gdn("Contractors Ended")])
    # A cycle of two groups.
    add("Cycle A", 2, dns(plain[400:403]) + [gdn("Cycle B")])
    add("Cycle B", 2, dns(plain[403:405]) + [gdn("Cycle A")])
    add("Empty Group", 0, [])
    add("LocalDomainServers", 4, [])
    add("Legacy List", None, dns(plain[500:510]), "legacy@acme.test")  # no GroupType (old document)
    # Escaped names written the other way, and in other case and spacing.
    esc = [p for p in people if p.get("escaped")]
    forms = [
        lambda p: p["dn_escaped"],                                       # \, form
        lambda p: p["dn_escaped"].replace("cn=", "CN=").replace(",ou=", ", OU=").replace(",o=", ", O="),
        lambda p: p["dn"].upper().replace("\\2C", "\\2c").replace("\\2B", "\\2b"),  # hex, lower hex digits
    ]
    add("Escaped Names", 2, [forms[i % 3](p) for i, p in enumerate(esc)])
    add("Sales Leads", 0, [forms[0](p) for p in esc if p["ou"] == "Sales"] + dns(by_ou[("Acme", "Sales")][:5]))
    # Access-control and mail-only groups to reach 42 groups in all.
    n = 0
    while len(groups) < 42:
        gtype = [0, 1, 2, 0, 1][n % 5]
        start = 600 + n * 7
        members = dns(plain[start:start + 3 + n % 9])
        if n % 6 == 0:
            members.append(gdn("Escaped Names"))
        add(f"Project {chr(65 + n % 26)}{n // 26 or ''}", gtype, members,
            None if gtype == 2 else f"project{n}@acme.test")
        n += 1
    return groups


def expand(groups, start):
    """People reachable from the group named start through nesting (cycle-safe)."""
    by_dn = {g["dn"].lower(): g for g in groups}
    seen, people, todo = set(), set(), [start.lower()]
    while todo:
        dn = todo.pop()
        if dn in seen:
            continue
        seen.add(dn)
        for m in by_dn[dn]["member"]:
            if m.lower() in by_dn:
                todo.append(m.lower())
            else:
                people.add(m)
    return sorted(people)


def ldif(reader_dn, reader_password):
    people = build()
    groups = groups_of(people)
    out = []

    def entry(dn, *lines):
        out.append("\n".join([b64_line("dn", dn), *lines]) + "\n")

    for org, spec in ORGS.items():
        entry(f"o={org}", "objectClass: organization", f"o: {org}")
        for ou in spec["ous"]:
            entry(f"ou={ou},o={org}", "objectClass: organizationalUnit", f"ou: {ou}")
    reader_cn = reader_dn.split(",", 1)[0].split("=", 1)[1]
    entry(reader_dn, "objectClass: applicationProcess", "objectClass: simpleSecurityObject",
          f"cn: {reader_cn}", "description: Read-only account the directory sync binds as",
          f"userPassword: {ssha(reader_password)}")
    for p in people:
        lines = ["objectClass: inetOrgPerson", "objectClass: dominoPerson"]
        lines += [b64_line("cn", v) for v in p["cn"]]
        lines += [b64_line("sn", p["surname"]), b64_line("givenName", p["given"]), f"uid: {p['uid']}",
                  f"dominoUNID: {p['unid']}"]
        if p["mail"]:
            lines.append(f"mail: {p['mail']}")
        entry(p["dn_escaped"], *lines)  # created with the \, form; OpenLDAP returns \2C
    for g in groups:
        lines = ["objectClass: dominoGroup", f"cn: {g['cn']}", f"dominoUNID: {g['unid']}"]
        if g["type"] is not None:
            lines.append(f"GroupType: {g['type']}")
        if g["mail"]:
            lines.append(f"mail: {g['mail']}")
        lines += [b64_line("member", m) for m in g["member"]]
        entry(g["dn"], *lines)
    return "\n".join(out)


CHANGES = [
    # (what, dn, newrdn, newSuperior or None)
    ("rename person", 0, "cn=Renamed Person", None),
    ("move person between OUs", 1, None, "ou=Engineering,o=Acme"),
    ("move person between organizations", 2, None, "ou=Paris,o=AcmeEU"),
    ("rename group", "cn=Project A", "cn=Project Alpha", None),
]


def changes(people):
    acme_sales = [p for p in people if p["org"] == "Acme" and p["ou"] == "Sales" and not p.get("escaped")
                  and p["mail"] and not p["aliases"]]
    picks = {0: acme_sales[1], 1: acme_sales[2], 2: acme_sales[3]}
    out = []
    for what, who, newrdn, sup in CHANGES:
        if isinstance(who, int):
            p = picks[who]
            dn, rdn, uid = p["dn"], newrdn or p["dn"].split(",", 1)[0], p["unid"]
            parent = sup or p["dn"].split(",", 1)[1]
        else:
            dn, rdn, uid, parent = who, newrdn, unid(who), ""
        new_dn = f"{rdn},{parent}" if parent else rdn
        out.append({"what": what, "dn": dn, "newrdn": rdn, "new_superior": sup, "new_dn": new_dn,
                    "dominoUNID": uid})
    return out


def manifest():
    people = build()
    groups = groups_of(people)
    per_org = {org: sum(1 for p in people if p["org"] == org) for org in ORGS}
    per_ou = {f"ou={ou},o={org}": sum(1 for p in people if p["org"] == org and p["ou"] == ou)
              for org, spec in ORGS.items() for ou in spec["ous"]}
    deny = expand(groups, "cn=Deny Access")
    def norm(dn):  # good enough for the names used here, not a general RFC 4514 parser
        return dn.lower().replace(" ", "").replace("\\,", "\\2c").replace("\\+", "\\2b")
    entry_by_norm = {norm(p["dn"]): p["dn"] for p in people if p.get("escaped")}
    escaped = [{"group": g["dn"], "member_as_written": m, "entry_dn": entry_by_norm[norm(m)]}
               for g in groups for m in g["member"] if norm(m) in entry_by_norm and m != entry_by_norm[norm(m)]]
    return {
        "format": 1,
        "base_dn": "",
        "suffixes": ["o=Acme", "o=AcmeEU"],
        "unid_operational": False,
        "unid_note": "slapd refuses user-defined operational attribute types; dominoUNID is a plain "
                     "attribute here: returned for '*' too, and ask for it by name as with Domino",
        "size_limit": 1000,
        "counts": {
            "people": len(people), "people_per_org": per_org, "people_per_ou": per_ou,
            "groups": len(groups), "entries_blank_base": len(people) + len(groups) + 2 + sum(
                len(s["ous"]) for s in ORGS.values()),
            "people_with_mail": sum(1 for p in people if p["mail"] and not p["percent"]),
            "people_without_mail": sum(1 for p in people if p["no_mail"]),
            "people_with_percent_mail": sum(1 for p in people if p["percent"]),
            "people_with_aliases": sum(1 for p in people if p["aliases"]),
            "aliases": sum(len(p["aliases"]) for p in people),
            "memberships": sum(len(g["member"]) for g in groups),
        },
        "people": [{"dn": p["dn"], "dominoUNID": p["unid"], "org": p["org"], "ou": p["ou"], "uid": p["uid"],
                    "cn": p["cn"], "mail": p["mail"], "aliases": p["aliases"]} for p in people],
        "without_mail": [p["dn"] for p in people if p["no_mail"]],
        "percent_mail": {p["dn"]: p["mail"] for p in people if p["percent"]},
        "groups": [{"dn": g["dn"], "cn": g["cn"], "dominoUNID": g["unid"], "GroupType": g["type"],
                    "mail": g["mail"], "member": g["member"]} for g in groups],
        "deny_group": "cn=Deny Access",
        "deny_members_expanded": deny,
        "cycle": ["cn=Cycle A", "cn=Cycle B"],
        "escaped_memberships": escaped,
        "changes": changes(people),
    }


def changes_ldif():
    out = []
    for c in manifest()["changes"]:
        lines = [b64_line("dn", c["dn"]), "changetype: modrdn", b64_line("newrdn", c["newrdn"]), "deleteoldrdn: 1"]
        if c["new_superior"]:
            lines.append(f"newsuperior: {c['new_superior']}")
        out.append("# " + c["what"] + "\n" + "\n".join(lines) + "\n")
    return "\n".join(out)


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "ldif" and len(sys.argv) == 4:
        sys.stdout.write(ldif(sys.argv[2], sys.argv[3]))
    elif mode == "manifest" and len(sys.argv) == 2:
        json.dump(manifest(), sys.stdout, indent=1, ensure_ascii=False)
        sys.stdout.write("\n")
    elif mode == "changes" and len(sys.argv) == 2:
        sys.stdout.write(changes_ldif())
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
