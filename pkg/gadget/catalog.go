package gadget

// Catalog is everything a gadget offers, in the shape of a GadgetPackage's
// status.catalog (pkg/apis/gadgetpm/v1alpha1.Catalog has the same JSON).
type Catalog struct {
	DataSources []CatalogDataSource `json:"dataSources,omitempty"`
	Params      []ParamDesc         `json:"params,omitempty"`
}

// CatalogDataSource is one data source of a catalog.
type CatalogDataSource struct {
	Name string `json:"name"`
	// Kind is "tracer", "snapshotter" or "interval".
	Kind   string         `json:"kind,omitempty"`
	Fields []CatalogField `json:"fields,omitempty"`
}

// CatalogField is one field of a data source.
type CatalogField struct {
	Name        string `json:"name"`
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
}

// Catalog returns the info as a catalog; hidden fields are left out.
func (i *Info) Catalog() *Catalog {
	c := &Catalog{Params: make([]ParamDesc, len(i.Params))}
	for n, p := range i.Params {
		// a copy: the catalog outlives the run's descriptions
		p.PossibleValues = append([]string(nil), p.PossibleValues...)
		c.Params[n] = p
	}
	for _, ds := range i.DataSources {
		cds := CatalogDataSource{Name: ds.Name(), Kind: string(ds.Type())}
		for _, f := range ds.Fields() {
			if f.Hidden {
				continue
			}
			cds.Fields = append(cds.Fields, CatalogField{Name: f.Name, Type: f.Kind.String(), Description: f.Description})
		}
		c.DataSources = append(c.DataSources, cds)
	}
	return c
}
