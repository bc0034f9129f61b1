package query

import "context"

// Page is one page of query results, as a store returns them. Items hold
// the store's twin type for SELECT * over twins and map[string]any
// otherwise (device-job records, projections, aggregates).
type Page struct {
	// ItemType is the x-ms-item-type the hub reports: Twin, DeviceJob or Raw.
	ItemType string
	Items    []any
	// Next is the opaque cursor of the following page, "" on the last one.
	Next string
}

// Runner executes parsed queries a page at a time; next is "" for the
// first page, then the previous page's Next.
type Runner interface {
	Run(ctx context.Context, q *Query, next string, limit int) (*Page, error)
}
