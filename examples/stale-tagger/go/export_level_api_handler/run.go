// stale-tagger: tags the devices offline for `days` days or more (default 30)
// with `tag` (default "stale"), creating the tag if it is missing.
package export_level_api_handler

import (
	"slices"
	"time"

	witTypes "go.bytecodealliance.org/pkg/wit/types"

	"wit_component/level_api_devices"
	"wit_component/level_api_handler"
	"wit_component/level_api_tags"
	"wit_component/level_api_types"
	"wit_component/levelhost"
)

type input struct {
	Days *int    `json:"days"`
	Tag  *string `json:"tag"`
}

func Run(invocation level_api_handler.Invocation) levelhost.Result {
	return levelhost.Plugin(invocation, func(in input) (any, error) {
		days, name := 30, "stale"
		if in.Days != nil {
			days = *in.Days
		}
		if in.Tag != nil {
			name = *in.Tag
		}
		if days < 1 {
			return nil, levelhost.InvalidInput{Message: "days must be a whole number, at least 1"}
		}
		tag, err := findOrCreate(name)
		if err != nil {
			return nil, err
		}
		devices, err := levelhost.Walk(func(page level_api_types.PageRequest) ([]level_api_devices.Device, bool, error) {
			answer := level_api_devices.ListDevices(level_api_devices.DeviceFilter{}, 0, page)
			if answer.IsErr() {
				return nil, false, levelhost.Level(answer.Err())
			}
			return answer.Ok().Items, answer.Ok().HasMore, nil
		}, func(d level_api_devices.Device) string { return d.Id })
		if err != nil {
			return nil, err
		}
		now := time.Now()
		stale := 0
		var untagged []level_api_devices.Device
		for _, d := range devices {
			if d.Online || d.LastSeenAt.IsNone() {
				continue
			}
			seen, err := time.Parse(time.RFC3339, d.LastSeenAt.Some())
			if err != nil || int(now.Sub(seen).Hours()/24) < days {
				continue
			}
			stale++
			if !slices.Contains(d.Tags, name) {
				untagged = append(untagged, d)
			}
		}
		hostnames := []string{}
		for start := 0; start < len(untagged); start += 100 {
			batch := untagged[start:min(start+100, len(untagged))]
			ids := make([]string, len(batch))
			for i, d := range batch {
				ids[i] = d.Id
				hostnames = append(hostnames, d.Hostname)
			}
			if answer := level_api_tags.TagDevices(tag.Id, ids); answer.IsErr() {
				return nil, levelhost.Level(answer.Err())
			}
		}
		levelhost.Info("tagged stale devices", "tagged", len(untagged))
		return map[string]any{"tag": name, "stale": stale, "tagged": hostnames}, nil
	})
}

func findOrCreate(name string) (level_api_tags.Tag, error) {
	all, err := levelhost.Walk(func(page level_api_types.PageRequest) ([]level_api_tags.Tag, bool, error) {
		answer := level_api_tags.ListTags(witTypes.None[string](), page)
		if answer.IsErr() {
			return nil, false, levelhost.Level(answer.Err())
		}
		return answer.Ok().Items, answer.Ok().HasMore, nil
	}, func(t level_api_tags.Tag) string { return t.Id })
	if err != nil {
		return level_api_tags.Tag{}, err
	}
	for _, t := range all {
		if t.Name == name {
			return t, nil
		}
	}
	created := level_api_tags.CreateTag(name)
	if created.IsErr() {
		return level_api_tags.Tag{}, levelhost.Level(created.Err())
	}
	return created.Ok(), nil
}
