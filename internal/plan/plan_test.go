package plan

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/tools/txtar"

	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/policy"
)

var update = flag.Bool("update", false, "rewrite the golden plans in testdata")

// goldenInput is the JSON a golden file gives: the event type, the identity
// before and after, and the access held.
type goldenInput struct {
	Event       identity.EventType    `json:"event"`
	Before      *identity.Identity    `json:"before"`
	After       *identity.Identity    `json:"after"`
	Grants      []identity.Grant      `json:"grants"`
	Credentials []identity.Credential `json:"credentials"`
	Accounts    []identity.Account    `json:"accounts"`
	// Possible are superseded steps that may have run; Now is the plan's
	// moment.
	Possible []Step    `json:"possible"`
	Now      time.Time `json:"now"`
}

// TestGolden runs every testdata/*.txtar: the policy file named in its
// "policy" section and the "input" section give the plan that must equal the
// "plan" section. Run with -update to rewrite the plans after a deliberate
// change, and review the diff.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txtar")
	if len(files) == 0 {
		t.Fatal("no golden files in testdata")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sections := map[string][]byte{}
			for _, f := range ar.Files {
				sections[f.Name] = f.Data
			}
			pol, err := policy.LoadFile(filepath.Join("testdata", strings.TrimSpace(string(sections["policy"]))))
			if err != nil {
				t.Fatal(err)
			}
			var in goldenInput
			dec := json.NewDecoder(bytes.NewReader(sections["input"]))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil {
				t.Fatalf("input: %v", err)
			}
			steps := Make(Input{Event: in.Event, Before: in.Before, After: in.After, Policy: pol,
				Desired: pol.Desired(in.After), Grants: in.Grants, Credentials: in.Credentials, Accounts: in.Accounts, Possible: in.Possible, Now: in.Now})
			var got strings.Builder
			widened := false
			for _, s := range steps {
				got.WriteString(s.String() + "\n")
				// The invariants every plan keeps: narrowing never waits
				// for approval, and nothing widens before all narrowing.
				if s.Action.Narrowing() && s.NeedsApproval {
					t.Errorf("narrowing step %s needs approval", s)
				}
				if s.Action.Narrowing() && widened {
					t.Errorf("narrowing step %s comes after a widening one", s)
				}
				widened = widened || !s.Action.Narrowing()
			}
			if *update {
				for i := range ar.Files {
					if ar.Files[i].Name == "plan" {
						ar.Files[i].Data = []byte(got.String())
					}
				}
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := string(sections["plan"]); got.String() != want {
				t.Fatalf("plan differs\n--- got\n%s--- want\n%s", got.String(), want)
			}
		})
	}
}
