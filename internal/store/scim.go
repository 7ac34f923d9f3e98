package store

// What the SCIM server keeps in the store, and its queries.

import (
	"fmt"
	"time"

	filter "github.com/scim2/filter-parser/v2"
)

// SCIMResource is a resource as provisioned over SCIM.
type SCIMResource struct {
	ID          string
	Source      string
	Type        string // User or Group
	UserName    string // lower-cased userName (displayName for groups)
	ExternalID  string
	DisplayName string
	Active      bool
	// Title, UserType, FamilyName and GivenName are lower-cased; Emails is
	// every email value lower-cased, each between \x1f separators.
	Title, UserType, FamilyName, GivenName, Emails string
	// Values are the elements of its multi-valued attributes, for value
	// filters; InsertSCIM and UpdateSCIM store them, GetSCIM does not
	// read them back.
	Values    []SCIMValue
	Data      []byte // the resource's JSON
	Version   int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// SCIMValue is one element of a multi-valued SCIM attribute, lower-cased.
type SCIMValue struct {
	Attr, Type, Value, Display string
	Primary                    bool
}

// SCIMQuery selects SCIM resources of a source and type ("User" or
// "Group"): those Filter (a parsed SCIM filter, nil for all) selects,
// sorted by SortBy (a SCIM attribute path, "" for creation order). The
// store translates both through its allow-list of attributes; what it
// cannot translate is a *FilterError or a *TooManyConditions.
type SCIMQuery struct {
	Source, Type string
	Filter       filter.Expression
	SortBy       string
	Descending   bool
	Offset       int
	Limit        int
}

// FilterError is a SCIM filter or sort the store cannot evaluate (SCIM's
// invalidFilter); Msg says why, naming the attribute.
type FilterError struct{ Msg string }

func (e *FilterError) Error() string { return e.Msg }

// TooManyConditions is a filter of more than Max comparisons (SCIM's
// tooMany): a client may not make the database work through thousands of
// terms.
type TooManyConditions struct{ N, Max int }

func (e *TooManyConditions) Error() string {
	return fmt.Sprintf("the filter makes %d comparisons; at most %d", e.N, e.Max)
}
