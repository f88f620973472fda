"""A throwaway plugin package for ptyrad_core's discovery tests."""
