package bench

import (
	"fmt"
	"strings"
)

// revokePolicy gives every service account five API keys, so that a
// leaver revokes five credentials.
const revokePolicy = `
systems: [{name: vault, type: builtin}]
entitlements: [{name: svc-read, system: vault}]
birthright:
  - {name: svc, when: 'identity.kind == "service_account"', entitlements: [svc-read]}
credentials:
  - {name: key-1, when: 'identity.kind == "service_account"', system: vault, type: api_key, ttl: 90d}
  - {name: key-2, when: 'identity.kind == "service_account"', system: vault, type: api_key, ttl: 90d}
  - {name: key-3, when: 'identity.kind == "service_account"', system: vault, type: api_key, ttl: 90d}
  - {name: key-4, when: 'identity.kind == "service_account"', system: vault, type: api_key, ttl: 90d}
  - {name: key-5, when: 'identity.kind == "service_account"', system: vault, type: api_key, ttl: 90d}
`

// rules50 is a policy with 50 birthright rules of the shapes real policies
// use: kind and department, environment and team, tool membership.
func rules50() string {
	var b strings.Builder
	b.WriteString("systems: [{name: vault, type: builtin}]\nentitlements:\n")
	for i := 0; i < 50; i++ {
		fmt.Fprintf(&b, "  - {name: e%d, system: vault}\n", i)
	}
	b.WriteString("birthright:\n")
	for i := 0; i < 50; i++ {
		var when string
		switch i % 5 {
		case 0:
			when = fmt.Sprintf(`identity.kind == "human" && identity.attributes.department == "dept-%d"`, i)
		case 1:
			when = fmt.Sprintf(`identity.kind == "pipeline" && identity.attributes.env == "prod" && identity.attributes.team == "team-%d"`, i)
		case 2:
			when = fmt.Sprintf(`identity.kind == "ai_agent" && "tool-%d" in identity.attributes.tools`, i)
		case 3:
			when = fmt.Sprintf(`identity.attributes.department == "dept-%d" || identity.attributes.team == "team-%d"`, i, i)
		case 4:
			when = fmt.Sprintf(`identity.kind == "human" && identity.attributes.location.startsWith("eu-") && identity.attributes.level >= %d`, i%7)
		}
		fmt.Fprintf(&b, "  - {name: r%d, when: '%s', entitlements: [e%d]}\n", i, when, i)
	}
	return b.String()
}

// joinerPolicy is the throughput workload: each human joiner gets two
// grants and one API key, three steps in all.
const joinerPolicy = `
systems: [{name: vault, type: builtin}]
entitlements: [{name: git-read, system: vault}, {name: wiki, system: vault}]
roles: [{name: staff, entitlements: [git-read, wiki]}]
birthright:
  - {name: staff, when: 'identity.kind == "human"', roles: [staff]}
credentials:
  - {name: token, when: 'identity.kind == "human"', system: vault, type: api_key, ttl: 30d}
`
