// The scripted model server moved to Sources/ScriptedModel so that `make bench` can use it too;
// tests keep reaching it through TestSupport.
@_exported import ScriptedModel
