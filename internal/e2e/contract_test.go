package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jml-dev/jml/internal/engine"
	"github.com/jml-dev/jml/internal/hrfeed"
	"github.com/jml-dev/jml/internal/identity"
	"github.com/jml-dev/jml/internal/poll"
	"github.com/jml-dev/jml/internal/store"
)

// TestContractExtendedInPostgres: an HR feed gives a contractor an end a
// few seconds ahead, then extends it. In real seconds, against PostgreSQL
// read as its administrator would read it (a login of the contractor's
// own): the login keeps working past the first end, and stops at the
// second.
func TestContractExtendedInPostgres(t *testing.T) {
	t.Parallel()
	const account = "e2e.contractor"
	f := setup(t, account)
	ctx := context.Background()
	m, err := hrfeed.ParseMapping("contract.yaml", []byte(`
source: hr
key: id
endDate: end
attributes: {department: dept}
dateFormat: "2006-01-02T15:04:05.000Z07:00"
`))
	if err != nil {
		t.Fatal(err)
	}
	prev := map[string]hrfeed.Record{}
	importAt := func(end time.Time) *engine.ImportResult {
		t.Helper()
		csv := "id,end,dept\n" + account + "," + end.UTC().Format("2006-01-02T15:04:05.000Z07:00") + ",Engineering\n"
		recs, err := m.Read(strings.NewReader(csv), "csv", nil)
		if err != nil {
			t.Fatal(err)
		}
		d := m.Compare(prev, recs, f.e.Now())
		snap, err := json.Marshal(d.Next)
		if err != nil {
			t.Fatal(err)
		}
		res, err := f.e.Import(ctx, admin, engine.Import{Source: m.Source, Events: d.Events, Cancel: d.Cancel, Snapshot: snap})
		if err != nil || len(res.Failed) > 0 {
			t.Fatalf("import: %v %+v", err, res)
		}
		prev = d.Next
		return res
	}
	// The contract, then its extension, before the first end comes.
	first, second := time.Now().Add(10*time.Second), time.Now().Add(16*time.Second)
	importAt(first)
	if res := importAt(second); res.Accepted != 1 {
		t.Fatalf("the extension: %+v, want its leaver accepted", res)
	}
	var id *identity.Identity
	poll.Until(t, 30*time.Second, 50*time.Millisecond, func() (bool, string) {
		err := f.s.View(ctx, func(tx store.Tx) error {
			var err error
			id, err = tx.GetIdentityByExternalID(ctx, "hr", account)
			return err
		})
		if err != nil {
			return false, err.Error()
		}
		var accounts []identity.Account
		f.s.View(ctx, func(tx store.Tx) error { accounts, _ = tx.ListAccounts(ctx, id.ID); return nil })
		active := 0
		for _, a := range accounts {
			if a.Status == identity.AccountActive {
				active++
			}
		}
		return active == 4, fmt.Sprintf("the contractor's accounts: %+v", accounts)
	})
	secret := f.secrets(t, id.ID)["appdb"]
	works := func() error {
		s, err := loginTo("appdb", account, secret)
		if err == nil {
			err = s.check()
			s.close()
		}
		return err
	}
	// Past the first end, by a second: the login works at every look.
	poll.Until(t, 20*time.Second, 200*time.Millisecond, func() (bool, string) {
		if err := works(); err != nil {
			t.Fatalf("%s after the first end date (%s), before the second (%s): login refused: %v", time.Now().Format(time.RFC3339Nano), first, second, err)
		}
		return time.Now().After(first.Add(time.Second)), "waiting for the first end date to pass"
	})
	poll.Until(t, 30*time.Second, 100*time.Millisecond, func() (bool, string) {
		err := works()
		if err != nil && time.Now().Before(second) {
			t.Fatalf("login refused at %s, before the contract's end at %s: %v", time.Now().Format(time.RFC3339Nano), second, err)
		}
		return err != nil, "the contractor can still log in to PostgreSQL after the second end date"
	})
}
